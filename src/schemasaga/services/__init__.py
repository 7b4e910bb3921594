"""Use cases over ports: the table and database commands, the saga runner, drift, verification, key
rotation and the read side, each through one unit of work (``unit_of_work.py``)."""
