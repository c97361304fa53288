#!/usr/bin/env python3
# Classic reference: connect with Django's settings until PostgreSQL answers (every error retried).
import sys
import time

import django

django.setup()
from django.db import connection  # noqa: E402

for _ in range(300):
    try:
        connection.ensure_connection()
        connection.close()
        sys.exit(0)
    except Exception:
        time.sleep(1)
sys.exit(1)
