"""An example Atlassian Connect app for Jira on fastapi-connect-auth: copy it to start your own."""
