"""Local stand-ins for the cloud services and AI providers: never imported by a production process.

Production modules import from here only when their setting says "local" (lib/config.py refuses those settings
when ENVIRONMENT=production), and scripts/package.py leaves this folder, and the dependencies only it needs
(requirements-local.txt), out of every deployed artifact.
"""
