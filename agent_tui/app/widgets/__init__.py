"""The app's widgets, one module per widget."""
