"""The shared kit every layer may use: settings, the database, the error model, logs, the clock,
server secrets, blob storage and the report taxonomy. It imports no feature (see the layer
contract in .importlinter and docs/architecture.md)."""
