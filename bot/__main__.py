from bot.script import entry

entry()
