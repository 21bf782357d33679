"""Analysis: pictures and measurements of what a trained model does."""
