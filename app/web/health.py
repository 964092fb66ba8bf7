from fastapi import APIRouter

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness only: says nothing about the data, the keys or the version."""
    return {"status": "ok"}
