"""vechat-rls: multi-tenant chat whose tenant isolation is enforced by PostgreSQL row-level security."""

__version__ = "0.1.0"
