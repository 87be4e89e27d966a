"""The fleet view: nodes ship their local history to one central PostgreSQL database.

Every module here is loaded only by the fleet commands and `watch --ship-to`; an edge node that
never ships never imports them (nor psycopg, the optional extra `ffrtmp[fleet]`). See
docs/fleet.md.
"""
