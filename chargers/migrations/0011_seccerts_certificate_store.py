import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("chargers", "0010_reservations_local_list_firmware"),
    ]

    operations = [
        migrations.CreateModel(
            name="CertificateStoreRecord",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("certificates", models.JSONField(blank=True, default=dict)),
                ("sealed_keys", models.TextField(blank=True, editable=False)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "charger",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="certificate_store",
                        to="chargers.charger",
                    ),
                ),
            ],
            options={
                "verbose_name": "certificate store",
            },
        ),
    ]
