"""preprocessor."""
