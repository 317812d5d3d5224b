// Implementation of the registration count rules (registration_counts.hpp).
#include "store/registration_counts.hpp"

#include <algorithm>
#include <vector>

#include "common/crypto.hpp"
#include "common/text.hpp"
#include "store/callback_store.hpp"

namespace mp::store {
namespace {

// The expressions of one branch: the events that count for a registration of that branch.
CountSql branch(const std::vector<const CountEvent*>& events) {
  std::size_t start = 0;  // events before the last truth are counted in it
  std::string base = "unread_count";
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i]->kind == CountEvent::Kind::truth) {
      start = i + 1;
      base = std::to_string(std::clamp<std::int64_t>(events[i]->unread, 0, kMaxUnreadCount));
    }
  }
  std::vector<std::string> seen;   // every new item, distinct, in order
  std::vector<std::string> added;  // first seen after the last truth (earlier ones are in it)
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i]->kind != CountEvent::Kind::new_item) continue;
    const std::string& d = events[i]->item;
    if (std::find(seen.begin(), seen.end(), d) != seen.end()) continue;
    seen.push_back(d);
    if (i >= start) added.push_back(d);
  }
  CountSql sql;
  if (start > 0) {
    sql.notify = "1";
  } else if (added.empty()) {
    sql.notify = "0";
  } else {
    for (const auto& d : added) {
      sql.notify +=
          (sql.notify.empty() ? "" : " OR ") + std::string("INSTR(recent_items, '") + d + ",') = 0";
    }
  }
  sql.count = base;
  for (const auto& d : added) sql.count += " + (INSTR(recent_items, '" + d + ",') = 0)";
  sql.count = "LEAST(" + sql.count + ", " + std::to_string(kMaxUnreadCount) + ")";
  if (seen.empty()) {
    sql.recent = "recent_items";
  } else {
    sql.recent = "RIGHT(CONCAT(recent_items";
    for (const auto& d : seen) {
      sql.recent += ", IF(INSTR(recent_items, '" + d + ",') = 0, '" + d + ",', '')";
    }
    sql.recent += "), " + std::to_string(kRecentItemsChars) + ")";
  }
  return sql;
}

bool is_hex_digest(std::string_view d) {
  return d.size() == kItemDigestChars && std::all_of(d.begin(), d.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

std::string item_digest(std::string_view id) {
  const Bytes digest = sha256(id);
  return hex_encode(std::span<const std::uint8_t>(digest.data(), kItemDigestChars / 2));
}

std::string count_folder_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxFolderIdChars) return "";
  return is_visible_ascii(id) ? std::string(id) : "";
}

CountSql count_sql(std::span<const CountEvent> events,
                   const std::function<std::string(std::string_view)>& quote) {
  // Events whose digest is not hex cannot be written into the SQL text: they do not count.
  std::vector<const CountEvent*> usable;
  std::vector<std::string> folders;  // distinct, in order
  for (const auto& e : events) {
    if (e.kind == CountEvent::Kind::new_item && !is_hex_digest(e.item)) continue;
    usable.push_back(&e);
    if (!e.folder_id.empty() &&
        std::find(folders.begin(), folders.end(), e.folder_id) == folders.end()) {
      folders.push_back(e.folder_id);
    }
  }
  const CountSql any = branch(usable);
  if (folders.empty()) {
    // No event names a folder: only registrations without a folder count them.
    return {"IF(folder_id IS NULL, " + any.count + ", unread_count)",
            "IF(folder_id IS NULL, " + any.recent + ", recent_items)",
            "IF(folder_id IS NULL, (" + any.notify + "), 0)"};
  }
  CountSql sql{"CASE WHEN folder_id IS NULL THEN " + any.count,
               "CASE WHEN folder_id IS NULL THEN " + any.recent,
               "CASE WHEN folder_id IS NULL THEN (" + any.notify + ")"};
  for (const auto& f : folders) {
    std::vector<const CountEvent*> mine;
    for (const auto* e : usable) {
      if (e->folder_id == f) mine.push_back(e);
    }
    const CountSql b = branch(mine);
    const std::string when = " WHEN folder_id = " + quote(f) + " THEN ";
    sql.count += when + b.count;
    sql.recent += when + b.recent;
    sql.notify += when + "(" + b.notify + ")";
  }
  sql.count += " ELSE unread_count END";
  sql.recent += " ELSE recent_items END";
  sql.notify += " ELSE 0 END";
  return sql;
}

CountState apply_count_events(CountState state, std::string_view folder_id,
                              std::span<const CountEvent> events) {
  // The SQL reads the items remembered before the callback for every event; new digests of this
  // callback are added to them only at its end.
  const std::string before = state.recent;
  const auto remembered_before = [&](const std::string& d) {
    for (std::size_t at = 0; at + kItemDigestChars <= before.size(); at += kItemDigestChars + 1) {
      if (before.compare(at, kItemDigestChars, d) == 0) return true;
    }
    return false;
  };
  std::vector<const CountEvent*> mine;
  for (const auto& e : events) {
    if (e.kind == CountEvent::Kind::new_item && !is_hex_digest(e.item)) continue;
    if (folder_id.empty() || e.folder_id == folder_id) mine.push_back(&e);
  }
  std::size_t start = 0;
  state.notify = false;
  for (std::size_t i = 0; i < mine.size(); ++i) {
    if (mine[i]->kind == CountEvent::Kind::truth) {
      start = i + 1;
      state.unread = std::clamp<std::int64_t>(mine[i]->unread, 0, kMaxUnreadCount);
      state.notify = true;
    }
  }
  std::vector<std::string> seen;
  for (std::size_t i = 0; i < mine.size(); ++i) {
    if (mine[i]->kind != CountEvent::Kind::new_item) continue;
    const std::string& d = mine[i]->item;
    const bool first = std::find(seen.begin(), seen.end(), d) == seen.end();
    if (first) seen.push_back(d);
    if (i >= start && first && !remembered_before(d)) {
      state.unread = std::min(kMaxUnreadCount, state.unread + 1);
      state.notify = true;
    }
  }
  for (const auto& d : seen) {
    if (!remembered_before(d)) state.recent += d + ",";
  }
  if (state.recent.size() > kRecentItemsChars) {
    state.recent.erase(0, state.recent.size() - kRecentItemsChars);
  }
  return state;
}

}  // namespace mp::store
