"""The command gateway: the write endpoints, each turned into a command or definition event
on Kafka with who issued it and why. It only publishes; reads are the query API's job.
Start with ``app.py``; ``service.py`` is the process (``flowlog worker gateway``).
"""
