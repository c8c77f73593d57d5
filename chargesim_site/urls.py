from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from api.errors import not_found_view
from api.metrics import metrics
from api.v1 import api

admin.site.site_header = "ChargeSim"
admin.site.site_title = "ChargeSim"
admin.site.index_title = "Fleet set-up"

urlpatterns = [
    path("admin/", admin.site.urls),
    # The dashboard's own login: the admin's refuses users who are not staff, and a user
    # who only watches the fleet should not reach the set-up.
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="dashboard/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("imports/", include("fleet_io.urls")),
    # The automation API; any other path under api/ answers in the API's error body.
    path("api/v1/", api.urls),
    re_path(r"^api/", not_found_view),
    # Prometheus metrics of this process (an API token with chargers.view_charger).
    path("metrics", metrics, name="metrics"),
    path("scenarios/", include("scenarios.urls")),
    path("", include("chargers.dashboard.urls")),
]
