"""
The pub chat room: every line one member sends, every member receives.

  - L{netdemos.chat.lines}: framing and cleaning of text lines;
  - L{netdemos.chat.rate}: the token bucket flood control uses;
  - L{netdemos.chat.room}: membership, names, announcements, per-turn
    batching and fan-out, with no socket in sight;
  - L{netdemos.chat.member}: what a member does whatever its wire: commands,
    nick rules, fair reading, flood control, dropping slow readers;
  - L{netdemos.chat.tcp}: the TCP member and its factory.
"""
