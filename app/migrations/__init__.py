"""The Alembic migrations: ``env.py``, the revision template and ``versions/`` (one revision per
schema change, one head). Alembic loads them as files from this directory (``app.schema``,
``alembic.ini``); nothing imports them. A package so that the wheel carries them and the layer
contract checks ``env.py``."""
