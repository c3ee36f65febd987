"""The history store: every run and bisection in one database (SQLite by default, a server through
SQLAlchemy), for trends, change points and cost over time.
"""
