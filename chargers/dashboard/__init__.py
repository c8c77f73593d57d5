"""The dashboard: the pages people watch and drive the fleet from, apart from the fleet
models (chargers.models) and their admin (chargers.admin).

`pages` reads what a page shows from the database, `views` renders it, `consumers` make it
live over a WebSocket per page (snapshots from the engine in, commands out, in the shapes
of `simulator.contract`), `urls` and `routing` route HTTP and WebSocket paths to them.
"""
