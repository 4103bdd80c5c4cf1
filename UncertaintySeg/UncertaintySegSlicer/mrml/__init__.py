"""MRML glue: arrays <-> nodes, colours, folders, tables, charts, references, run replacement, the Logic's body."""
