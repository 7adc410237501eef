"""The errors of the layer's verbs that are not in bot.errors because they carry pipeline values
(a subscriber file's problems, each with its file and line). Import where the error is caught."""

from bot.subscribers.files import Problem as Problem
from bot.subscribers.files import SubscriberFileError as SubscriberFileError

__all__ = ["Problem", "SubscriberFileError"]
