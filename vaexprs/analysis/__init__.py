"""Analysis: metrics of generated against real cells, figures, and `vaexprs evaluate`'s file handling."""
