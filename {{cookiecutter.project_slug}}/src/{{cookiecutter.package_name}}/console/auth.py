"""Logging in with the console's token, and out: a blueprint (`/login`, `/logout`).

Without a token there is nothing to log in to, and `/login` sends you on at once.
"""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, session, url_for

from .forms import local_path
from .guard import start_session
from .security import same_secret
from .state import current_console

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    target = local_path(request.values.get("next", ""), url_for("pages.overview"))
    console = current_console()
    if not console.token_required:
        return redirect(target)
    failed = False
    if request.method == "POST":
        if same_secret(console.token, request.form.get("token")):
            start_session(authenticated=True)
            return redirect(target)
        failed = True
    status = 401 if failed else 200
    return render_template("login.html", next=target, failed=failed), status


@bp.post("/logout")
def logout() -> Response:
    session.clear()  # Flask deletes the cookie of an emptied session
    return redirect(url_for("auth.login"))
