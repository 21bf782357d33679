"""The latent explorer (`vaelab explore RUN`): `app.create_app(run_dir)` is the FastAPI app, `drawing` prepares a
drawing the way the dataset's images were prepared, `static/` holds the page."""
