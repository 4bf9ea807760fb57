"""Reusable panes: the lazy file tree, the file viewer, the live bus/events panes."""
