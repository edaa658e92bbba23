"""kubefuncs HTTP gateway: turns HTTP requests into topic messages and waits for replies."""
