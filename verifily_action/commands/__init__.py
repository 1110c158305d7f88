"""One module per CLI command. Each exposes `register(app)` and keeps heavy imports inside its functions."""
