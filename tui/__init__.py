"""`aether tui`: the Textual workspace console.

Layout: `app` (the App, key bindings, palette, error notifications), `data`
(the only module that talks to the daemon, through the async SDK), `screens/`
(one module per screen), `widgets/` (reusable panes), `dialogs` (modal
forms and prompts) and `format` (how values are shown).
"""
