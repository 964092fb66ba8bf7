from app.entrypoints.cli import main

# Guarded: `daylight serve` starts its workers with multiprocessing's spawn method, which
# imports this module again in each child under another name.
if __name__ == "__main__":
    raise SystemExit(main())
