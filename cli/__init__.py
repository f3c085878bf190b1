"""The amanah command line: thin click commands over amanah.node."""
