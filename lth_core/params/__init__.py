"""Parameters: notebook parameter cells and the profiles that set them."""
