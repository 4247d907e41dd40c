"""Fixed catalogue of sandbox campaigns and their message copy (a fictional SaaS, "Tallyfold").

With `CampaignWorld.hostile_copy` every name and piece of copy also carries text that tries to
become markup in a report (`hostile_copy`): a script, `javascript:` links, raw HTML, Markdown and
matplotlib mathtext. Workspaces hold such text for real (a pasted snippet, a template under test),
and a report must show it as the characters it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class ActionTemplate:
    """One message of a campaign template."""

    channel: str  # "email" | "push" | "twilio"
    name: str
    subject: str
    preheader: str
    body: str


@dataclass(frozen=True)
class CampaignTemplate:
    """One campaign template: copy, tags and the segment (by key) that triggers it."""

    key: str
    name: str
    description: str
    tags: tuple[str, ...]
    trigger: str  # segment key, see workspace.SEGMENT_SPECS
    actions: tuple[ActionTemplate, ...]


def _email(name: str, subject: str, preheader: str, *paragraphs: str) -> ActionTemplate:
    body = "<p>Hi {{customer.first_name | default: 'there'}},</p>" + "".join(
        f"<p>{p}</p>" for p in paragraphs) + "<p>— The Tallyfold team</p>"
    return ActionTemplate("email", name, subject, preheader, body)


def _push(name: str, title: str, text: str) -> ActionTemplate:
    # Push and SMS have no subject/preheader in Customer.io; the push title lives in the body.
    return ActionTemplate("push", name, "", "", f"{title}: {text}")


def _sms(name: str, text: str) -> ActionTemplate:
    return ActionTemplate("twilio", name, "", "", text + " Reply STOP to opt out.")


CAMPAIGNS: tuple[CampaignTemplate, ...] = (
    CampaignTemplate(
        "onboarding", "Onboarding: welcome series", "First week for new trial sign-ups.",
        ("onboarding", "lifecycle"), "trial",
        (
            _email("Welcome email", "Welcome to Tallyfold, let's set up your first board",
                   "Three steps, about five minutes.",
                   "Thanks for signing up. Your workspace is ready.",
                   "<a href='https://app.tallyfold.example/start'>Create your first board</a>"),
            _email("Day 3: first project tips", "3 tips teams use in their first project",
                   "Templates, due dates and a shared inbox.",
                   "Most teams start from a template. Here are the three our customers reuse most."),
            _push("Day 5 nudge", "Your board is waiting", "Add your first task in under a minute."),
            _email("Day 7: invite your team", "Tallyfold works better with your team",
                   "Invite up to 5 teammates free during your trial.",
                   "Boards with three or more members finish projects 2x faster.",
                   "<a href='https://app.tallyfold.example/invite'>Invite teammates</a>"),
        ),
    ),
    CampaignTemplate(
        "trial_ending", "Trial ending reminders", "Reminders before and after the trial ends.",
        ("trial", "conversion"), "trial",
        (
            _email("Trial ends in 3 days", "Your trial ends in 3 days",
                   "Keep your boards, automations and history.",
                   "Pick a plan now and nothing changes for your team.",
                   "<a href='https://app.tallyfold.example/billing'>Choose a plan</a>"),
            _sms("Trial ends tomorrow SMS",
                 "Tallyfold: your trial ends tomorrow. Keep your boards: tallyfold.example/b"),
            _email("Trial ended: keep your work", "Your trial has ended, your work is safe",
                   "Upgrade within 14 days to pick up where you left off.",
                   "We saved everything. Upgrade any time in the next 14 days to restore access."),
        ),
    ),
    CampaignTemplate(
        "winback", "Win-back: dormant 60 days", "Re-engage people inactive for 60+ days.",
        ("retention", "win-back"), "dormant",
        (
            _email("We miss you", "It's been a while. Here's what you missed",
                   "New templates, faster boards, and a gift.",
                   "A lot has changed since your last visit. Come take a look."),
            _email("What's new since you left", "5 things that are new in Tallyfold",
                   "Automations, calendar view and more.",
                   "Here is a two-minute tour of what shipped this quarter."),
            _sms("Comeback offer SMS",
                 "Tallyfold: come back this week and get 30% off 3 months: tallyfold.example/w"),
        ),
    ),
    CampaignTemplate(
        "newsletter", "Weekly product newsletter", "Weekly digest of product news and tips.",
        ("newsletter", "nurture"), "all",
        (
            _email("Weekly digest", "This week at Tallyfold: recurring tasks and more",
                   "Product news, one tip and a customer story.",
                   "Recurring tasks are here.", "Tip of the week: use saved filters for standups."),
        ),
    ),
    CampaignTemplate(
        "best_practices", "Nurture: best practices", "Three-part education series.",
        ("nurture", "education"), "all",
        (
            _email("Best practices #1: templates", "Stop rebuilding the same board",
                   "Templates save teams hours each week.",
                   "Turn any board into a template in two clicks."),
            _email("Best practices #2: automations", "Let the busywork run itself",
                   "Five automations worth turning on today.",
                   "Move cards, assign owners and send reminders automatically."),
            _email("Best practices #3: reporting", "See where the work gets stuck",
                   "Cycle time, workload and throughput reports.",
                   "Reports show where tasks wait the longest."),
        ),
    ),
    CampaignTemplate(
        "seat_limit", "Upgrade prompt: seat limit", "Accounts close to their seat limit.",
        ("upsell", "expansion"), "paying",
        (
            _email("Close to seat limit", "You're close to your seat limit",
                   "Add seats before someone gets locked out.",
                   "Your workspace uses most of its seats. Add more in billing settings."),
            _push("Seat limit reached push", "Seat limit reached", "Add seats so new teammates can join."),
        ),
    ),
    CampaignTemplate(
        "pro_features", "Upgrade prompt: Pro features", "Show Pro features to Starter accounts.",
        ("upsell",), "paying",
        (
            _email("Unlock advanced reporting", "Unlock advanced reporting with Pro",
                   "Dashboards, exports and time tracking.",
                   "Pro adds dashboards your leadership will actually read."),
            _push("Try Pro push", "Try Pro free for 14 days", "No card needed, cancel any time."),
        ),
    ),
    CampaignTemplate(
        "usage_reminder", "Usage reminder: inactive 14 days", "Nudge people inactive for two weeks.",
        ("engagement",), "all",
        (
            _push("Projects miss you push", "Your projects miss you", "3 tasks are due this week."),
            _email("Pick up where you left off", "Pick up where you left off",
                   "3 tasks are due this week.",
                   "Here is what changed on your boards while you were away."),
        ),
    ),
    CampaignTemplate(
        "checkout", "Abandoned checkout", "People who started but did not finish upgrading.",
        ("conversion", "cart"), "trial",
        (
            _email("Checkout reminder", "You left something in checkout",
                   "Your Pro plan is one click away.",
                   "Finish upgrading and keep your automations running."),
            _sms("Finish upgrading SMS", "Tallyfold: finish upgrading in one tap: tallyfold.example/c"),
            _email("Last chance saved plan", "Last chance: your saved plan expires tonight",
                   "The discount in your cart ends at midnight.",
                   "We held your discount for 48 hours. It ends tonight."),
        ),
    ),
    CampaignTemplate(
        "integrations", "Feature adoption: integrations", "Drive integration set-up.",
        ("adoption",), "paying",
        (
            _email("Connect your tools", "Connect the tools your team already uses",
                   "Chat, calendar, code hosting and 40 more.",
                   "Integrations bring updates into the board so nobody copies links by hand."),
            _push("New integration push", "New integration available", "Sync tasks with your calendar."),
        ),
    ),
    CampaignTemplate(
        "nps", "NPS survey", "Quarterly satisfaction survey.",
        ("feedback", "survey"), "paying",
        (
            _email("NPS email", "How likely are you to recommend Tallyfold?",
                   "One question, ten seconds.",
                   "Click a number from 0 to 10. That's the whole survey."),
            _sms("NPS SMS", "Tallyfold: how likely are you to recommend us (0-10)? Reply with a number."),
        ),
    ),
    CampaignTemplate(
        "qbr", "Enterprise QBR prep", "Quarterly usage report for enterprise admins.",
        ("enterprise", "account-management"), "enterprise",
        (
            _email("Quarterly usage report", "Your quarterly usage report is ready",
                   "Adoption by team, seats used and top boards.",
                   "Your account manager will walk through it on your next call."),
        ),
    ),
    CampaignTemplate(
        "dunning", "Payment failed dunning", "Failed card payments.",
        ("billing",), "paying",
        (
            _email("Payment failed", "Payment failed: please update your card",
                   "We'll retry in 3 days.",
                   "Your last payment did not go through. Update your card to avoid interruption."),
            _sms("Payment issue SMS", "Tallyfold: we couldn't process your payment. Update: tallyfold.example/p"),
            _email("Final notice account pause", "Final notice: your account will be paused",
                   "Update your card to keep access.",
                   "We tried three times. Without an update your workspace pauses in 48 hours."),
        ),
    ),
    CampaignTemplate(
        "mobile", "Mobile app activation", "Get people onto the mobile app.",
        ("mobile", "adoption"), "all",
        (
            _push("Alerts on the go push", "Get alerts on the go", "Approve and comment from your phone."),
            _push("Turn on notifications push", "Turn on notifications", "Never miss a mention."),
            _email("Download the mobile app", "Tallyfold is better in your pocket",
                   "Scan the code to install.",
                   "Comment, approve and check off tasks from anywhere."),
        ),
    ),
    CampaignTemplate(
        "referral", "Referral program", "Give a month, get a month.",
        ("growth", "referral"), "paying",
        (
            _email("Give a month get a month", "Give a month, get a month",
                   "Share your link, both of you save.",
                   "Every friend who subscribes gets a free month, and so do you."),
            _push("Invite a friend push", "Invite a friend", "You both get a month free."),
        ),
    ),
    CampaignTemplate(
        "webinar", "Webinar invitations", "Live workshop invitations.",
        ("events", "nurture"), "all",
        (
            _email("Workshop invite", "Live workshop: automation 101",
                   "Thursday, 45 minutes, with Q&A.",
                   "Join our product team for a hands-on session on automations."),
            _email("Workshop reminder", "Reminder: the workshop starts in 1 hour",
                   "Your join link is inside.",
                   "Grab a coffee, we start in an hour."),
            _sms("Workshop starting SMS", "Tallyfold: the automation workshop starts now: tallyfold.example/l"),
        ),
    ),
)


# ---- hostile copy ----------------------------------------------------------------------------

HOSTILE_SUBJECT = "See <script>alert(1)</script>"
HOSTILE_PREHEADER = "javascript:alert(document.cookie)"
HOSTILE_NAME = "**markdown** $\\notacommand$ <img src=x onerror=alert(2)>"
HOSTILE_CAMPAIGN = "<script>alert('campaign')</script> [link](javascript:alert(3))"
HOSTILE_BODY = ("<p><a href=\"javascript:alert(4)\">Open</a> [click](javascript:alert(5)) "
                "$x$ <script>alert('body')</script></p>")


def hostile_copy(campaigns: pd.DataFrame, actions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`campaigns` and `actions` with hostile text in every name, subject, preheader and body.

    Names keep their own words first (so a report stays readable) and ids are untouched, so the
    workspace's metrics and plants are the same as without the knob. Email subjects start with
    a script, preheaders are a `javascript:` URL; push and SMS copy carry the body's snippet.
    """
    campaigns = campaigns.assign(name=campaigns["name"] + " " + HOSTILE_CAMPAIGN)
    email = actions["channel"] == "email"
    actions = actions.assign(
        name=actions["name"] + " " + HOSTILE_NAME,
        subject=actions["subject"].where(~email, HOSTILE_SUBJECT + " " + actions["subject"]),
        preheader_text=actions["preheader_text"].where(~email, HOSTILE_PREHEADER),
        body=HOSTILE_BODY + actions["body"])
    return campaigns, actions
