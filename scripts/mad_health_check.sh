#!/bin/bash
# The deployment guide's health check (5.2.2), working under cron and at a terminal alike.
#
# Same services, output and exit code as the guide's script (the number of MADs that are
# not HEALTHY). Two differences:
# - `docker-compose exec -T ... < /dev/null`. The guide's `docker-compose exec` asks for a
#   TTY, which compose v1 (docker-compose 1.29) cannot get under cron ("the input device
#   is not a TTY"); at a terminal, `timeout` runs it in the background, where reading the
#   terminal stops it: compose v1 until the 10 s run out, compose v2 for good (`timeout`
#   cannot end it). Either way a healthy group was reported unhealthy, or never reported.
# - Where `docker-compose` is not installed (Docker's own packages ship Compose v2 as the
#   docker CLI's plugin only), `docker compose`.
# See docs/packaging.md.
#
# Install:  sudo cp scripts/mad_health_check.sh /opt/ && sudo chmod +x /opt/mad_health_check.sh
# Cron:     */5 * * * * /opt/mad_health_check.sh >> /var/log/mad_health.log 2>&1

# Set the path to your deployment directory (or export MAD_PROJECT_DIR). Run from a
# checkout, the script finds the checkout it lives in.
PROJECT_DIR="${MAD_PROJECT_DIR:-/path/to/your/mad-group-v1/}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." 2>/dev/null && pwd)"
if [ -z "${MAD_PROJECT_DIR:-}" ] && [ -f "$HERE/docker-compose.yml" ]; then
    PROJECT_DIR="$HERE"
fi

# Services to check
SERVICES=("grace" "rogers" "fiedler")

# The guide's docker-compose (v1, or v2 installed standalone), else the plugin's form.
if command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    COMPOSE=(docker compose)
fi

# Alerting configuration (customize this)
ALERT_EMAIL="your-alert-email@example.com"
SLACK_WEBHOOK_URL="<YOUR_SLACK_WEBHOOK_URL_HERE>"

# Flag to track if any service failed
FAILURES=0
FAILED_SERVICES=""

# Ensure we are in the project directory
cd "$PROJECT_DIR" || { echo "Could not cd to $PROJECT_DIR"; exit 1; }

# Loop through each service and check its status
for SERVICE in "${SERVICES[@]}"; do
    echo "Checking service: $SERVICE"
    # Execute mad-status and check for the "Status: HEALTHY" keyword. -T and /dev/null:
    # no TTY is needed, so this works under cron and under timeout.
    # The timeout ensures the script doesn't hang on an unresponsive container
    if ! timeout 10s "${COMPOSE[@]}" exec -T "$SERVICE" mad-status < /dev/null | grep -q "Status: HEALTHY"; then
        echo "ALERT: Service $SERVICE is NOT HEALTHY!"
        FAILURES=$((FAILURES + 1))
        FAILED_SERVICES="$FAILED_SERVICES $SERVICE"
    else
        echo "Service $SERVICE is HEALTHY."
    fi
done

# If any failures were detected, send an alert
if [ "$FAILURES" -gt 0 ]; then
    TIMESTAMP=$(date)
    HOSTNAME=$(hostname)
    MESSAGE="ALERT on $HOSTNAME at $TIMESTAMP: The following MAD services are failing health checks: $FAILED_SERVICES"

    # Send email alert
    # echo "$MESSAGE" | mail -s "MAD System Health Alert" "$ALERT_EMAIL"

    # Send Slack alert via webhook
    # curl -X POST -H 'Content-type: application/json' --data "{\"text\":\"$MESSAGE\"}" "$SLACK_WEBHOOK_URL"

    echo "Alerts would be sent for failed services: $FAILED_SERVICES"
fi

# Exit with a status code indicating success or failure
exit $FAILURES
