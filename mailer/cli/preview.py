"""`mailer preview BLAST --to EMAIL`: exactly what one supporter would receive."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import click
from sqlmodel import select

from mailer.assemble import composer_for
from mailer.cli import AppContext, pass_app
from mailer.compose.alert import Recipient
from mailer.errors import NotFound
from mailer.store import Delivery, Supporter, find_blast
from mailer.supporters.columns import lookup_form


@click.command("preview")
@click.argument("blast")
@click.option("--to", "address", required=True, help="Supporter address to render the alert for.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("preview"),
    show_default=True,
    help="Folder for the HTML part and the whole message (.eml).",
)
@pass_app
def preview_command(app: AppContext, blast: str, address: str, out_dir: Path) -> None:
    """Render BLAST for one supporter (--to EMAIL): print headers and text, save HTML and .eml.

    Links are the real tracking links; before the blast is sent they carry
    delivery 0, so following one answers 404 and records nothing.
    """
    db = app.db()
    with db.session() as session:
        found = find_blast(session, blast)
        supporter = session.exec(
            select(Supporter).where(Supporter.email == lookup_form(address))
        ).first()
        if supporter is None:
            raise NotFound(f"no supporter {address!r}")
        delivery = session.exec(
            select(Delivery).where(
                Delivery.blast_id == found.id, Delivery.supporter_id == supporter.id
            )
        ).first()
    composer = composer_for(db, app.settings, found)
    recipient = Recipient.of(supporter)
    composed = composer.compose(delivery.id if delivery and delivery.id else 0, recipient)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"blast{found.id}-{supporter.id}"
    html_path = out_dir / f"{stem}.html"
    eml_path = out_dir / f"{stem}.eml"
    html_path.write_text(composed.alert.html, "utf-8")
    eml_path.write_bytes(composed.message.data)
    parsed = email.message_from_bytes(composed.message.data, policy=email.policy.default)
    click.echo(f"Envelope-From: {composed.message.envelope_sender}")
    for name, value in parsed.items():
        click.echo(f"{name}: {value}")
    click.echo(f"\n--- text part ({composed.alert.language}) ---")
    click.echo(composed.alert.text)
    click.echo(f"--- HTML part saved to {html_path}")
    click.echo(f"--- whole message saved to {eml_path}")


COMMANDS = [preview_command]
