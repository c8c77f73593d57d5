"""Charge point ids unique regardless of letter case: "CP-001" and "cp-001" would fight
over one identity at a CSMS that matches ids case-insensitively.

A database that already holds such ids is not changed behind the user's back (renaming a
charger changes what its CSMS knows it by): the migration stops before adding the index
and names every group, for the user to rename all but one of each."""

from django.core.management.base import CommandError
from django.db import migrations, models
from django.db.models import Count
from django.db.models.functions import Lower

import chargers.validators

#: Groups named in the message; the rest are counted.
NAMED_GROUPS = 20


def case_twin_groups(charger_model):
    """The stored ids that equal another but for case, in groups (sorted), lowered by the
    database as the index lowers them."""
    rows = charger_model.objects.annotate(folded=Lower("charge_point_id"))
    shared = rows.values("folded").annotate(n=Count("pk")).filter(n__gt=1).values_list("folded")
    groups = {}
    for folded, cp_id in rows.filter(folded__in=shared).values_list("folded", "charge_point_id"):
        groups.setdefault(folded, []).append(cp_id)
    return [sorted(group) for _, group in sorted(groups.items())]


def refuse_case_twins(apps, schema_editor):
    groups = case_twin_groups(apps.get_model("chargers", "Charger"))
    if not groups:
        return
    shown = "\n".join(f"  {', '.join(group)}" for group in groups[:NAMED_GROUPS])
    if len(groups) > NAMED_GROUPS:
        shown += f"\n  ... and {len(groups) - NAMED_GROUPS} more groups"
    # A CommandError: `migrate`, and `runsimulator` that migrates, print the message alone,
    # not at the end of a traceback of Django's migration machinery.
    raise CommandError(
        f"{len(groups)} group(s) of chargers have charge point ids that differ only in "
        f"letter case:\n{shown}\n"
        "A CSMS that matches ids regardless of case takes each group for one charger, so "
        "charge point ids are now unique regardless of case. Rename all but one charger of "
        "each group (its CSMS then knows it by the new id), then migrate again. With this "
        "version the simulator does not start before; rename them with the version you ran, "
        'or with: python manage.py shell -c "from chargers.models import Charger; '
        "Charger.objects.filter(charge_point_id='OLD').update(charge_point_id='NEW')\""
    )


class Migration(migrations.Migration):
    dependencies = [("chargers", "0020_charger_claims")]

    operations = [
        migrations.AlterField(
            model_name="charger",
            name="charge_point_id",
            field=models.CharField(
                help_text=(
                    "The identity in the CSMS URL: letters, digits and . _ ~ - (at most 48), "
                    "unique regardless of letter case."
                ),
                max_length=48,
                unique=True,
                validators=[chargers.validators.validate_charge_point_id],
                verbose_name="charge point id",
            ),
        ),
        migrations.RunPython(refuse_case_twins, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="charger",
            constraint=models.UniqueConstraint(
                Lower("charge_point_id"), name="charger_charge_point_id_ci_unique"
            ),
        ),
    ]
