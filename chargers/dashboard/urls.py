from django.urls import path

from chargers.dashboard import views

app_name = "chargers"

urlpatterns = [
    path("", views.fleet, name="home"),
    path("chargers/<int:pk>/", views.charger_detail, name="charger"),
    # By its charge point id (a number is the pk above): redirected to the page.
    path("chargers/<str:charge_point_id>/", views.charger_by_id, name="charger_by_id"),
    path("chargers/<int:pk>/transactions/", views.charger_transactions, name="transactions"),
    path("locations/", views.location_list, name="locations"),
    path("locations/<int:pk>/", views.location_detail, name="location"),
    # /static/ is answered by WhiteNoise (chargesim_site.static_files), DEBUG on or off.
]
