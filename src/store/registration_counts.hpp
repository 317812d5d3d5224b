// How a callback's events change its registration's unread count (badges belong to
// registrations), as SQL over the registration row's own columns (`unread_count`,
// `recent_items`, `folder_id`), so that a batch writes every registration in one statement
// without reading it first. Pure: tested without a database.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace mp::store {

// One event of a callback that may move its registration's unread count.
struct CountEvent {
  enum class Kind {
    truth,     // a folder's ModifiedEvent with UnreadCount: the count is that
    new_item,  // a NewMailEvent: one more, unless the item was counted before
  };
  Kind kind = Kind::truth;
  std::int64_t unread = 0;  // truth: 0 to kMaxUnreadCount
  // The event's folder (truth: FolderId; new_item: ParentFolderId), or "" when Exchange gave
  // none or one this relay cannot compare (count_folder_id).
  std::string folder_id;
  std::string item;  // new_item: item_digest of its ItemId (of its watermark without one)
};

// A registration remembers the newest kRecentItems items it counted, each kItemDigestChars hex
// digits and a comma, newest last (`registrations.recent_items`, VARCHAR(340)).
inline constexpr std::size_t kRecentItems = 20;
inline constexpr std::size_t kItemDigestChars = 16;
inline constexpr std::size_t kRecentItemsChars = kRecentItems * (kItemDigestChars + 1);
// What `registrations.folder_id` can hold: printable ASCII without spaces, at most this long.
inline constexpr std::size_t kMaxFolderIdChars = 512;

// 16 lower-case hex digits of SHA-256(`id`).
std::string item_digest(std::string_view id);
// `id` when a registration's folder_id could equal it (printable ASCII, no space, at most
// kMaxFolderIdChars), else "".
std::string count_folder_id(std::string_view id);

// SET expressions for one registration: `notify`, `count` for unread_count and `recent` for
// recent_items, to be assigned in that order (MariaDB assigns left to right, so the first two
// read the items remembered before this callback). `notify` is 1 when the device should hear of
// it: a truth counted, or a new item not remembered before (an item Exchange sent again is not
// worth a push); else 0. A registration with a folder_id counts only its folder's events; one
// without counts them all. Events apply in order: a truth sets the count, a new item adds one
// when its digest is not remembered (and is remembered from then on, whether it counted or not).
// `quote` makes a string literal (Connection::quote); digests are hex and need none.
struct CountSql {
  std::string count;
  std::string recent;
  std::string notify;
};
CountSql count_sql(std::span<const CountEvent> events,
                   const std::function<std::string(std::string_view)>& quote);

// The same rules in C++, for the listener's tests (a fake store) and as the specification the SQL
// is tested against: the state after `events` for a registration with `folder_id` ("" for none).
struct CountState {
  std::int64_t unread = 0;
  std::string recent;   // as registrations.recent_items
  bool notify = false;  // of the last apply_count_events: as CountSql::notify
};
CountState apply_count_events(CountState state, std::string_view folder_id,
                              std::span<const CountEvent> events);

}  // namespace mp::store
