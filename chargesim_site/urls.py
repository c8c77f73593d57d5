from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "ChargeSim"
admin.site.site_title = "ChargeSim"
admin.site.index_title = "Fleet set-up"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("imports/", include("fleet_io.urls")),
    path("", include("chargers.dashboard.urls")),
]
