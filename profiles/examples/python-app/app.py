"""A small untrusted script: report what it sees of the machine, compute something."""

import hashlib
import os
import platform

u = os.uname()
print(f"kernel:   {u.sysname} {u.release} ({u.machine})")
print(f"hostname: {u.nodename}")
print(f"python:   {platform.python_version()}")
primes = [n for n in range(2, 200) if all(n % d for d in range(2, int(n ** 0.5) + 1))]
print(f"primes below 200: {len(primes)}, largest {primes[-1]}")
print(f"sha256('sandboxctl'): {hashlib.sha256(b'sandboxctl').hexdigest()[:16]}...")
try:
    with open("/work/app.py", "a"):
        print("write to /work: allowed (unexpected)")
except OSError as exc:
    print(f"write to /work: refused ({exc.strerror})")
