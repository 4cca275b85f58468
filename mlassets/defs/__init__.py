"""The project's own models, one `mlassets.TabularModel` component per folder (`defs.yaml`).

`dg scaffold defs mlassets.TabularModel models/<name>` adds one here.
"""
