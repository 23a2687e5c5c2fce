"""The market: settlement credits (credits.py), trading tokens for them (trading.py), the record of sales and
the prices read from it (sales.py)."""
