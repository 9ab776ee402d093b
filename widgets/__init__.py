"""vlkit.widgets: the notebook layer (ipywidgets / anywidget), installed from the repo's widgets/ folder.

Only this package imports ipywidgets; the core `vlkit` package never does.

    from vlkit.widgets import ImageChat, LoRAFineTune, AttentionExplorer
    ImageChat(preset="tiny")

Each widget is imported when first asked for, so importing the package is quick and one widget's
missing optional dependency (anywidget for the explorer) never breaks the others.
"""

from __future__ import annotations

_WIDGETS = {
    "ImageChat": ".chat",
    "LoRAFineTune": ".finetune",
    "AttentionExplorer": ".explorer",
}


def __getattr__(name):
    if name in _WIDGETS:
        from importlib import import_module

        return getattr(import_module(_WIDGETS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_WIDGETS))


__all__ = ["AttentionExplorer", "ImageChat", "LoRAFineTune"]
