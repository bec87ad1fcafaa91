"""The web console: server-rendered pages (FastAPI + Jinja2) over each appliance.

`app.build_app(ctx)` makes the one application an appliance serves: the
console's pages, `/static/...` and, on the manager, the REST API v2.0.
`context.ConsoleContext` is what pages reach (`request.app.state.ctx`);
`auth` (users, `page_user`, `require`), `csrf` and `templating` are what every
page area uses. Areas are `APIRouter`s in their own modules.
"""
