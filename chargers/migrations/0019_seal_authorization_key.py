"""The AuthorizationKey is sealed under SECRET_KEY (it was stored as the charger sends it).

Existing keys are sealed here; going back opens them again (under the same SECRET_KEY)."""

from typing import Any

from django.db import migrations

import chargers.sealed


def seal_keys(apps: Any, schema_editor: Any) -> None:
    charger = apps.get_model("chargers", "Charger")
    # Read as stored (a value without the prefix is the key itself); the field seals it on
    # the way back.
    for pk, key in charger.objects.exclude(authorization_key="").values_list(
        "pk", "authorization_key"
    ):
        charger.objects.filter(pk=pk).update(authorization_key=key)


def open_keys(apps: Any, schema_editor: Any) -> None:
    charger = apps.get_model("chargers", "Charger")
    table = schema_editor.quote_name(charger._meta.db_table)
    column = schema_editor.quote_name("authorization_key")
    with schema_editor.connection.cursor() as cursor:
        # Written around the field, which would seal it again; a key that no longer opens
        # (another SECRET_KEY) reads as "" and is lost, as it would be in use.
        for pk, key in charger.objects.exclude(authorization_key="").values_list(
            "pk", "authorization_key"
        ):
            cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [key, pk])


class Migration(migrations.Migration):
    dependencies = [
        ("chargers", "0018_security_log_entry"),
    ]

    operations = [
        migrations.AlterField(
            model_name="charger",
            name="authorization_key",
            field=chargers.sealed.SealedTextField(
                blank=True,
                help_text=(
                    "HTTP Basic password for security profiles 1 and 2. Write-only; the "
                    "database holds it sealed under SECRET_KEY."
                ),
                text_max_length=100,
                verbose_name="AuthorizationKey (password)",
            ),
        ),
        migrations.RunPython(seal_keys, open_keys),
    ]
