"""Telling people about a failed run: a chat webhook (slack) and one GitHub issue per regressed tier (github).
"""
