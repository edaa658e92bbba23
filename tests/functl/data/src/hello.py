def handle(payload: object) -> str:
    return f"hello {payload}"
