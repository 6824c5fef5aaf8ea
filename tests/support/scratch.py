"""A scratch database with one tiny forced-RLS table and its own roles, for tests of db.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from tests.support.postgres import TestPostgres

SETUP_SQL = """
CREATE ROLE {owner} NOLOGIN;
CREATE ROLE {app} LOGIN NOBYPASSRLS PASSWORD '{app}';
GRANT CONNECT ON DATABASE {db} TO {app};
CREATE TABLE public.vechat_items (
    organisation_id bigint NOT NULL,
    user_id bigint NOT NULL,
    note text NOT NULL
);
ALTER TABLE public.vechat_items OWNER TO {owner};
ALTER TABLE public.vechat_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_items FORCE ROW LEVEL SECURITY;
CREATE POLICY vechat_items_organisation_isolation ON public.vechat_items
    USING (organisation_id = nullif(current_setting('vechat.organisation_id', true), '')::bigint);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.vechat_items TO {app};
INSERT INTO public.vechat_items VALUES (1, 10, 'one'), (2, 20, 'two');
"""


@dataclass
class Scratch:
    """A database and the names of its roles; `app_url` connects as the RLS-bound role."""

    pg: TestPostgres
    database: str
    app_role: str
    owner_role: str
    login_roles: list[str] = field(default_factory=list)

    @property
    def app_url(self) -> str:
        return self.pg.app_url(self.database, user=self.app_role, password=self.app_role)

    @property
    def admin_url(self) -> str:
        return self.pg.admin_url(self.database)

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.encode())

    def new_login_role(self, attributes: str = "") -> str:
        """A fresh LOGIN role (password = its name) with `attributes`, e.g. 'BYPASSRLS'."""
        name = f"t_role_{uuid.uuid4().hex[:8]}"
        self.login_roles.append(name)
        self.admin(
            f"CREATE ROLE {name} LOGIN PASSWORD '{name}' {attributes};"
            f"GRANT CONNECT ON DATABASE {self.database} TO {name};"
        )
        return name

    def url_for(self, role: str) -> str:
        return self.pg.app_url(self.database, user=role, password=role)

    def drop(self) -> None:
        """The database and every role made for it (roles are cluster-wide: left behind, they
        would show up in other tests' views of the cluster, e.g. vechat_audit.privileged_roles)."""
        self.pg.drop_database(self.database)
        with psycopg.connect(self.pg.admin_url(), autocommit=True) as conn:
            for role in (self.app_role, self.owner_role, *self.login_roles):
                conn.execute(f"DROP ROLE IF EXISTS {role}")


def create_scratch(pg: TestPostgres) -> Scratch:
    database = pg.create_database("scratch")
    suffix = uuid.uuid4().hex[:8]
    scratch = Scratch(pg, database, app_role=f"t_app_{suffix}", owner_role=f"t_owner_{suffix}")
    scratch.admin(SETUP_SQL.format(owner=scratch.owner_role, app=scratch.app_role, db=database))
    return scratch


@pytest.fixture(scope="module")
def scratch(postgres: TestPostgres) -> Iterator[Scratch]:
    """A scratch database for the module, dropped with its roles afterwards."""
    made = create_scratch(postgres)
    yield made
    made.drop()
