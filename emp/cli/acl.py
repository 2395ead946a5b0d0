"""`emp acl`: print the Redis ``ACL SETUSER`` line(s) of one user of a namespace (docs/security.md).

It prints; it never runs them (apply them with a superuser: ``emp acl ... | redis-cli``). The rules
are built by :mod:`emp.redis.acl_rules` (pure text, no connection).
"""

from __future__ import annotations

from typing import Annotated

import typer

from emp.cli import common


def register(app: typer.Typer) -> None:
    app.command("acl")(acl)


def acl(
    ctx: typer.Context,
    role: Annotated[
        str,
        typer.Option(
            "--role", metavar="ROLE", help="worker, coordinator or admin (docs/security.md).", show_default=False
        ),
    ],
    user: Annotated[str, typer.Option("--user", metavar="NAME", help="The Redis user name.", show_default=False)],
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", metavar="NS", help="The namespace the user is confined to (default: the global one)."
        ),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            metavar="PW",
            help="The user's password (env EMP_ACL_PASSWORD). Without it one is generated and printed once on stderr.",
            envvar="EMP_ACL_PASSWORD",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the `ACL SETUSER` line(s) confining USER to one namespace with ROLE's commands."""
    from emp.redis import acl_rules

    ns = namespace if namespace is not None else common.settings_of(ctx).namespace
    generated = password is None
    pw = acl_rules.generate_password() if password is None else password
    try:
        lines = acl_rules.setuser_lines(ns, role, user, pw)
    except ValueError as exc:
        common.fail(str(exc), common.EXIT_BAD_INPUT)
    if generated:
        common.err_console().print(f"generated password for {user} (shown once): {pw}", markup=False, highlight=False)
    for line in lines:
        typer.echo(line)
