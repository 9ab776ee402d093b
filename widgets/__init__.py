"""vlkit.widgets: the notebook layer (ipywidgets / anywidget), installed from the repo's widgets/ folder.

Only this package imports ipywidgets; the core `vlkit` package never does.
"""
