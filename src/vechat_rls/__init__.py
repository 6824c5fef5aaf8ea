"""vechat-rls: multi-tenant chat, tenant isolation enforced by PostgreSQL row-level security."""

__version__ = "0.1.0"
