"""Domain services: the rules of the product, free of HTTP and of Flask."""
