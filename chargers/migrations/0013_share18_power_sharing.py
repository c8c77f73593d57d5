from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chargers", "0012_firmware_failure_invalid_signature"),
    ]

    operations = [
        migrations.AddField(
            model_name="charger",
            name="power_sharing",
            field=models.CharField(
                choices=[
                    ("equal", "equal share (what one connector leaves goes to the others)"),
                    ("first", "first come, first served (the earliest session first)"),
                ],
                default="equal",
                help_text="The max power caps the sum of the connectors; this says how they "
                "share it.",
                max_length=5,
                verbose_name="power sharing",
            ),
        ),
    ]
