"""What answers for one person on any engine: the status API's documents, answers and guard, and
the support desks' page. The engines' workers serve them (agents/web.py, quix_worker/web.py)."""
