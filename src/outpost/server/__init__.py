"""The ASGI entry point, management endpoints and the server runner."""
