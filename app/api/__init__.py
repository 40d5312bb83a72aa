"""The HTTP edge: Connexion handlers, authentication and error rendering."""
