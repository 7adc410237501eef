"""The chat adapters: they verify what a chat sends, hand the command to the one command core
(`bot.app.chat.ChatCommands`) and translate its reply into the chat's own markup."""
